/* Byte scans of text that run on every message, in C; tests hold each equal to its
 * Python twin on any bytes, and Python runs when this module is not built
 * (compiled.c_module).
 *
 * add_new_terms(data: bytes, known: set | frozenset, into: set) -> None
 *
 *   adds to ``into`` every distinct term of ``data`` that is not in ``known``: the terms
 *   of FTS5's "ascii" tokenizer, maximal runs of ASCII letters and digits and of bytes
 *   >= 0x80 (UTF-8 sequences, so a run never cuts a character); every other byte
 *   separates terms.  Twin: words.python_add_new_terms (tests/unit/store/test_words.py).
 *
 *   Why C: the indexer needs each batch's terms that the vocabulary lacks (words.py).  In
 *   Python that is a bytes object and a SipHash for every word of the text, ~1,600 for
 *   10 KB of English: ~250 us, a third of the index process's CPU per message.  Here the
 *   repeats are found first in a table of (start, length, FNV-1a hash) over the input
 *   itself, so only the distinct terms (~530) become objects, each looked up once in
 *   ``known`` (bench/README.md, SMTP, session 8).
 *
 * distinct_terms(data: bytes) -> bytes | None
 *
 *   the distinct terms of ``data`` (as above), each once, in the order of their first
 *   occurrence, joined by a SPACE; None when a term was looked for in MAX_PROBES slots
 *   without an answer (the caller then runs the twin, words.python_distinct_terms).
 *   Exactly the twin's answer, always: the index removes a body by giving FTS5 the
 *   same text again, computed maybe by the other implementation (indexer.py).
 *
 *   Why: the index is FTS5 with detail=column, which keeps which columns of a body hold
 *   a term, not how often or where.  Every token costs FTS5 a tokenizer callback and a
 *   hash lookup all the same, so it is given each column's distinct terms instead of
 *   the text: 10 KB of English holds ~1,660 words but ~510 distinct ones.  Indexing
 *   alone (bench/fts_distinct.py), this scan included: 380-396 -> 328-340 us per
 *   English message, 152-158 -> 71-75 on the bench text; this scan is 34-101 us of it
 *   (bench/README.md, SMTP, session 10), and 29-35 on the bench text and 71 on English
 *   since session 11 found the terms in a bitmap of the term bytes (Scan, below).
 *
 * index_forms(texts: list[bytes], known: set | frozenset, into: set) -> list[bytes] | None
 *
 *   both of the above for a batch of texts in one pass and one table: each text's
 *   distinct_terms, and into ``into`` every distinct term of them all that ``known``
 *   lacks; None past the probe bound (``into`` may hold some terms then: the caller
 *   starts again with the twins, words.index_forms).  The indexer scanned each batch
 *   twice, once per text for its form and once more over the forms for the vocabulary;
 *   a term the batch met before is only marked as met in this text (session 11).
 *
 * collapse_ascii(data: bytes) -> bytes
 *
 *   ``data`` with every run of whitespace made one SPACE and none at either end: what
 *   ``" ".join(text.split())`` does to an ASCII str, whose whitespace is TAB, LF, VT, FF,
 *   CR, the four separators 0x1c-0x1f and SPACE (str.isspace).  Other bytes are kept.
 *   Its definition in Python, which a test holds it equal to on any bytes:
 *   python_collapse_ascii in tests/unit/mail/test_parse.py.  Without this module,
 *   parse.collapse_whitespace runs its own Python ways (faster than that definition).
 *
 *   Why C: the indexer collapses the whitespace of every body text; the best Python way
 *   (two translations and a search for a double space) took ~36 us per 10 KB of
 *   English, this one 7 us (bench/README.md, SMTP, sessions 8 and 9).
 *
 * find_dot_line(data: bytes, start: int) -> int
 *
 *   ``data.find(b"\n.", start)``: where the next line starting with "." begins (its LF),
 *   or -1, for 0 <= start <= len(data).  Twin: bytes.find.
 *
 * line_ends(data: bytes, start: int, end: int, cr_open: bool) -> int
 *
 *   how the line ends of ``data[start:end]`` read, when a CR ended the bytes before them
 *   (``cr_open``) or not: -1 a bare CR or LF (one not in a CR LF pair), 1 CR LF pairs
 *   only but for a CR last (its LF may be the next chunk's first byte), 0 CR LF pairs
 *   only.  Twin: smtp.core.python_line_ends (tests/unit/smtp/test_core_data.py).
 *
 *   Why C: the SMTP core's DATA reader looks for the end mark and a dot-stuffed line,
 *   and for bare CRs and LFs (SMTP smuggling), in every message's bytes.  bytes.find of
 *   "\n." took 14 us per 10 KB message of 80-byte lines (each LF found is a false
 *   start), and deleting every other byte to read the line ends (bytes.translate) 10
 *   us; here memchr, the C library's vector search, goes from line to line (bench/README.md,
 *   SMTP, session 11).  The translate also missed a bare CR and a bare LF apart in one
 *   line ("a\r.\nb" left "\r\n").
 *
 * count_lf(data: bytes, start: int, end: int) -> int
 *
 *   ``data.count(b"\n", start, end)``, for 0 <= start <= end <= len(data).  Twin:
 *   bytes.count (tests/unit/mail/test_mime.py).  Why: the parser counts the lines of
 *   every text body (IMAP's body-fld-lines), and bytes.count looks at a byte at a time:
 *   5-7 us per 10 KB; here eight bytes at a time, 1.4-2.2 us (bench/README.md, SMTP,
 *   session 11).
 *
 * No library does either one thing; see docs/architecture.md, Compiled modules.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static unsigned char is_term[256];
static unsigned char is_space[256];

typedef struct {
    const unsigned char *start; /* NULL: an empty slot */
    Py_ssize_t len;
    uint64_t hash;
    Py_ssize_t last; /* the text the term was last met in (index_forms) */
} Slot;

static size_t
slot_index(uint64_t hash, size_t mask)
{
    /* FNV-1a's low bits alone cluster on short inputs: mix the high ones in */
    hash ^= hash >> 33;
    hash *= 0xff51afd7ed558ccdULL;
    hash ^= hash >> 33;
    return (size_t)hash & mask;
}

/* Twice the slots, every entry placed again; -1 (MemoryError set) when out of memory. */
static int
grow(Slot **slots, size_t *capacity)
{
    size_t old_capacity = *capacity, new_capacity = old_capacity * 2, mask, i, j;
    Slot *old = *slots, *fresh;
    if (new_capacity > PY_SSIZE_T_MAX / sizeof(Slot)) {
        PyErr_NoMemory();
        return -1;
    }
    fresh = PyMem_Calloc(new_capacity, sizeof(Slot));
    if (fresh == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    mask = new_capacity - 1;
    for (i = 0; i < old_capacity; i++) {
        if (old[i].start == NULL)
            continue;
        j = slot_index(old[i].hash, mask);
        while (fresh[j].start != NULL)
            j = (j + 1) & mask;
        fresh[j] = old[i];
    }
    PyMem_Free(old);
    *slots = fresh;
    *capacity = new_capacity;
    return 0;
}

/* A term is looked for this many slots at most.  The hash is not keyed, so a message
   could be made of words that all land in one run of slots, each scan of it quadratic.
   Past the bound the table cannot tell whether a term is new: add_new_terms hands it to
   the Python sets (their SipHash is keyed), which costs an object each time it recurs;
   distinct_terms gives up and returns None, and its caller runs the Python twin
   (words.distinct_terms), so that its answer is always exactly the twin's. */
#define MAX_PROBES 64

/* The distinct terms of one scan: slots pointing into the scanned bytes. */
typedef struct {
    Slot *slots;
    size_t capacity, used, max_probes;
} Table;

/* 0, or -1 with an exception set; ``args[index]``, when given, is a lower probe bound
   (tests: to take the path past it). */
static int
table_init(Table *table, PyObject *const *args, Py_ssize_t nargs, Py_ssize_t index)
{
    table->capacity = 256;
    table->used = 0;
    table->max_probes = MAX_PROBES;
    if (nargs > index) {
        table->max_probes = PyLong_AsSize_t(args[index]);
        if (table->max_probes == (size_t)-1 && PyErr_Occurred())
            return -1;
    }
    table->slots = PyMem_Calloc(table->capacity, sizeof(Slot));
    if (table->slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL
#define LOWS 0x7f7f7f7f7f7f7f7fULL

/* Eight bytes as a number whose low byte is the first, on any byte order. */
static uint64_t
load_le64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

/* The terms of a text, from a bitmap of its term bytes: bit i of word i / 64 is set when
   byte i is a term byte.  The bitmap is made 16 bytes at a time (SSE2, on every x86-64)
   or through is_term, and the runs of set bits are found with count-trailing-zeros, so
   no byte costs a branch: a byte loop (a branch per byte, mispredicted at most word
   ends) took 57 of distinct_terms' ~100 us per 10 KB of English (session 10). */
typedef struct {
    const unsigned char *data;
    Py_ssize_t size, pos;
    uint64_t *bits;
    uint64_t small[64]; /* the bitmap of up to 4 KB, without an allocation */
} Scan;

#if defined(__SSE2__)
#include <emmintrin.h>

/* Bits of 16 bytes: ASCII letters and digits, bytes >= 0x80. */
static unsigned int
term_bits16(const unsigned char *p)
{
    const __m128i v = _mm_loadu_si128((const __m128i *)p);
    const __m128i folded = _mm_or_si128(v, _mm_set1_epi8(0x20)); /* A-Z to a-z */
    const __m128i letter = _mm_cmpeq_epi8(
        _mm_min_epu8(_mm_max_epu8(folded, _mm_set1_epi8('a')), _mm_set1_epi8('z')), folded);
    const __m128i digit = _mm_cmpeq_epi8(
        _mm_min_epu8(_mm_max_epu8(v, _mm_set1_epi8('0')), _mm_set1_epi8('9')), v);
    return (unsigned int)_mm_movemask_epi8(_mm_or_si128(_mm_or_si128(letter, digit), v));
}
#endif

/* 0, or -1 with MemoryError set. */
static int
scan_init(Scan *scan, const unsigned char *data, Py_ssize_t size)
{
    Py_ssize_t words = size / 64 + 1, w, i, base;
    scan->data = data;
    scan->size = size;
    scan->pos = 0;
    scan->bits = scan->small;
    if ((size_t)words > sizeof(scan->small) / sizeof(uint64_t)) {
        scan->bits = PyMem_Malloc((size_t)words * sizeof(uint64_t));
        if (scan->bits == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    for (w = 0; w < words; w++) {
        uint64_t word = 0;
        base = w * 64;
#if defined(__SSE2__)
        if (size - base >= 64) {
            word = (uint64_t)term_bits16(data + base)
                   | (uint64_t)term_bits16(data + base + 16) << 16
                   | (uint64_t)term_bits16(data + base + 32) << 32
                   | (uint64_t)term_bits16(data + base + 48) << 48;
            scan->bits[w] = word;
            continue;
        }
#endif
        for (i = 0; i < 64 && base + i < size; i++)
            word |= (uint64_t)is_term[data[base + i]] << i;
        scan->bits[w] = word; /* the bits past the end stay clear: a term ends there */
    }
    return 0;
}

static void
scan_free(Scan *scan)
{
    if (scan->bits != scan->small)
        PyMem_Free(scan->bits);
}

/* The first bit from ``pos`` on that is set (``set``) or clear, or ``limit``. */
static Py_ssize_t
next_bit(const uint64_t *bits, Py_ssize_t pos, Py_ssize_t limit, int set)
{
    Py_ssize_t w = pos / 64, last = limit / 64;
    uint64_t word = (set ? bits[w] : ~bits[w]) & (~0ULL << (pos % 64));
    while (word == 0) {
        if (++w > last)
            return limit;
        word = set ? bits[w] : ~bits[w];
    }
    pos = w * 64 + __builtin_ctzll(word);
    return pos < limit ? pos : limit;
}

/* Up to eight bytes of a term from ``start`` as a number, the first in the low byte. */
static uint64_t
first_bytes(const unsigned char *start, Py_ssize_t len, const unsigned char *end)
{
    uint64_t v = 0;
    Py_ssize_t i;
    if (end - start >= 8) {
        v = load_le64(start);
        return len < 8 ? v & (~0ULL >> (64 - 8 * len)) : v; /* the term's bytes only */
    }
    for (i = 0; i < len && i < 8; i++) /* the last bytes of the text: no load past it */
        v |= (uint64_t)start[i] << (8 * i);
    return v;
}

/* A hash of a term.  A term of eight bytes at most is its own hash: a term holds no NUL
   byte, so the number tells the bytes and their count, and the table need not compare
   them (table_add).  A longer one is hashed eight bytes at a time. */
static uint64_t
term_hash(const unsigned char *start, Py_ssize_t len, const unsigned char *end)
{
    uint64_t h;
    if (len <= 8)
        return first_bytes(start, len, end);
    h = (uint64_t)len * 0x9e3779b97f4a7c15ULL;
    for (; len > 0; start += 8, len -= 8) {
        h = (h ^ first_bytes(start, len, end)) * 0xff51afd7ed558ccdULL;
        h ^= h >> 29;
    }
    return h;
}

/* The next term: its start, length and hash.  0 when there is none left. */
static int
next_term(Scan *scan, const unsigned char **start, Py_ssize_t *len, uint64_t *hash)
{
    Py_ssize_t first, stop;
    if (scan->pos >= scan->size)
        return 0;
    first = next_bit(scan->bits, scan->pos, scan->size, 1);
    if (first >= scan->size) {
        scan->pos = scan->size;
        return 0;
    }
    stop = next_bit(scan->bits, first, scan->size, 0);
    scan->pos = stop;
    *start = scan->data + first;
    *len = stop - first;
    *hash = term_hash(*start, *len, scan->data + scan->size);
    return 1;
}

/* Whether the term is new to this scan: 1 (new, remembered from now on), 0 (seen
   before in text ``last``), 3 (seen before, but not in text ``last``: it is now), 2 (not
   known: past the probe bound), -1 (MemoryError set: the table could not grow).  A scan
   of one text passes 0 for ``last`` throughout. */
static int
table_add(Table *table, const unsigned char *start, Py_ssize_t len, uint64_t hash,
          Py_ssize_t last)
{
    size_t i = slot_index(hash, table->capacity - 1), probes;
    for (probes = 0;; probes++) {
        Slot *slot = &table->slots[i];
        if (slot->start == NULL) {
            slot->start = start;
            slot->len = len;
            slot->hash = hash;
            slot->last = last;
            table->used++;
            if (table->used * 2 > table->capacity && grow(&table->slots, &table->capacity) < 0)
                return -1;
            return 1;
        }
        if (probes >= table->max_probes)
            return 2;
        if (slot->hash == hash && slot->len == len
            && (len <= 8 || memcmp(slot->start, start, (size_t)len) == 0)) { /* term_hash */
            if (slot->last == last)
                return 0;
            slot->last = last;
            return 3;
        }
        i = (i + 1) & (table->capacity - 1);
    }
}

/* Adds the term to ``into`` unless ``known`` holds it: 0, or -1 with an exception set. */
static int
add_if_unknown(const unsigned char *start, Py_ssize_t len, PyObject *known, PyObject *into)
{
    int seen;
    PyObject *term = PyBytes_FromStringAndSize((const char *)start, len);
    if (term == NULL)
        return -1;
    seen = PySet_Contains(known, term);
    if (seen < 0 || (seen == 0 && PySet_Add(into, term) < 0)) {
        Py_DECREF(term);
        return -1;
    }
    Py_DECREF(term);
    return 0;
}

static PyObject *
add_new_terms(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    const unsigned char *start;
    Scan scan;
    Table table;
    PyObject *data, *known, *into;
    uint64_t hash;
    Py_ssize_t len;
    int new;

    (void)module;
    if (nargs != 3 && nargs != 4) {
        PyErr_Format(PyExc_TypeError, "add_new_terms() takes 3 arguments (%zd given)", nargs);
        return NULL;
    }
    data = args[0];
    known = args[1];
    into = args[2];
    if (!PyBytes_Check(data) || !PyAnySet_Check(known) || !PySet_Check(into)) {
        PyErr_SetString(PyExc_TypeError, "add_new_terms() takes bytes, a set or frozenset, a set");
        return NULL;
    }
    if (table_init(&table, args, nargs, 3) < 0)
        return NULL;
    /* ``data`` is immutable and referenced by the caller for the whole call: the slots
       may point into it. */
    if (scan_init(&scan, (const unsigned char *)PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data)) < 0) {
        PyMem_Free(table.slots);
        return NULL;
    }
    while (next_term(&scan, &start, &len, &hash)) {
        new = table_add(&table, start, len, hash, 0);
        if (new < 0)
            goto error;
        if (new == 0)
            continue;
        if (add_if_unknown(start, len, known, into) < 0)
            goto error;
    }
    scan_free(&scan);
    PyMem_Free(table.slots);
    Py_RETURN_NONE;

error:
    scan_free(&scan);
    PyMem_Free(table.slots);
    return NULL;
}

/* The form of one text (its distinct terms in the order found, joined by a SPACE) as a
   new bytes object, the table remembering the terms as met in text ``last``; with
   ``known``, every term new to the table is also added to ``into`` unless ``known``
   holds it.  NULL with *gave_up set past the probe bound (no exception), NULL alone on
   an error (exception set). */
static PyObject *
form_of(Table *table, PyObject *text, Py_ssize_t last, PyObject *known, PyObject *into,
        int *gave_up)
{
    const unsigned char *start;
    unsigned char *out, *out_start;
    Scan scan;
    PyObject *form;
    uint64_t hash;
    Py_ssize_t len;
    int new;

    *gave_up = 0;
    /* Never longer than the text: each term written stands for an occurrence of its own
       there, and two occurrences are apart by a separator at least. */
    form = PyBytes_FromStringAndSize(NULL, PyBytes_GET_SIZE(text));
    if (form == NULL)
        return NULL;
    /* ``text`` is immutable and referenced by the caller for the whole call: the slots
       may point into it. */
    if (scan_init(&scan, (const unsigned char *)PyBytes_AS_STRING(text), PyBytes_GET_SIZE(text)) < 0) {
        Py_DECREF(form);
        return NULL;
    }
    out_start = out = (unsigned char *)PyBytes_AS_STRING(form);
    while (next_term(&scan, &start, &len, &hash)) {
        new = table_add(table, start, len, hash, last);
        if (new == 2)
            *gave_up = 1; /* past the probe bound: the caller takes the Python way */
        if (new < 0 || new == 2
            || (new == 1 && known != NULL && add_if_unknown(start, len, known, into) < 0)) {
            scan_free(&scan);
            Py_DECREF(form);
            return NULL;
        }
        if (new == 0)
            continue;
        if (out != out_start)
            *out++ = ' ';
        memcpy(out, start, (size_t)len);
        out += len;
    }
    scan_free(&scan);
    if (_PyBytes_Resize(&form, out - out_start) < 0)
        return NULL;
    return form;
}

static PyObject *
distinct_terms(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Table table;
    PyObject *data, *result;
    int gave_up;

    (void)module;
    if (nargs != 1 && nargs != 2) {
        PyErr_Format(PyExc_TypeError, "distinct_terms() takes 1 argument (%zd given)", nargs);
        return NULL;
    }
    data = args[0];
    if (!PyBytes_Check(data)) {
        PyErr_Format(PyExc_TypeError, "distinct_terms() takes bytes, not %.100s",
                     Py_TYPE(data)->tp_name);
        return NULL;
    }
    if (table_init(&table, args, nargs, 1) < 0)
        return NULL;
    result = form_of(&table, data, 0, NULL, NULL, &gave_up);
    PyMem_Free(table.slots);
    if (result == NULL && gave_up)
        Py_RETURN_NONE;
    return result;
}


/* Bytes p..stop a byte at a time into *out: whitespace is skipped, and a SPACE goes
 * before the next byte kept when whitespace came since the last one (*gap) and one was
 * kept before it (none before the first word).  Returns the new p (stop). */
static const unsigned char *
collapse_bytes(const unsigned char *p, const unsigned char *stop, unsigned char **out,
               const unsigned char *start, int *gap)
{
    for (; p < stop; p++) {
        if (is_space[*p]) {
            *gap = *out != start;
            continue;
        }
        if (*gap) {
            *(*out)++ = ' ';
            *gap = 0;
        }
        *(*out)++ = *p;
    }
    return p;
}

static PyObject *
collapse_ascii(PyObject *module, PyObject *arg)
{
    const unsigned char *p, *end;
    unsigned char *out, *start;
    uint64_t v, below_space, spaces, white_before = 1;
    PyObject *result;
    int gap = 0; /* whitespace read since the last byte kept, and a byte kept before it */

    (void)module;
    if (!PyBytes_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "collapse_ascii() takes bytes, not %.100s",
                     Py_TYPE(arg)->tp_name);
        return NULL;
    }
    /* never longer than the input */
    result = PyBytes_FromStringAndSize(NULL, PyBytes_GET_SIZE(arg));
    if (result == NULL)
        return NULL;
    p = (const unsigned char *)PyBytes_AS_STRING(arg);
    end = p + PyBytes_GET_SIZE(arg);
    start = out = (unsigned char *)PyBytes_AS_STRING(result);
    /* Eight bytes at a time.  In most text every whitespace character is a SPACE
     * between two words, which stays as it is: eight bytes holding no byte below 0x20
     * (which all other whitespace is) and no SPACE after whitespace (``white_before``:
     * whether the byte before them is whitespace; the start counts as such) are copied
     * whole, the others go byte by byte.  A byte at a time took 37-45 us per 10 KB of
     * English (a branch per byte, mispredicted at most spaces) and 14-18 us for text of
     * regular lines; this, 6-8 us for both (bench/README.md, SMTP, session 9).  No store
     * passes the input's length: ``out`` never outruns the bytes read. */
    while (end - p >= 8) {
        v = load_le64(p);
        below_space = (v - ONES * 0x20) & ~v & HIGHS; /* non-zero iff a byte is < 0x20 */
        v ^= ONES * 0x20;
        spaces = ~(((v & LOWS) + LOWS) | v | LOWS); /* 0x80 in each SPACE byte, exactly */
        if ((below_space | (spaces & ((spaces << 8) | (white_before << 7)))) == 0) {
            /* the first byte is not whitespace when gap is set (not after a SPACE) */
            *out = ' ';
            out += gap;
            memcpy(out, p, 8);
            out += 8;
            p += 8;
            /* a SPACE at the end is held back: whitespace may follow it */
            white_before = spaces >> 63;
            out -= white_before;
            gap = (int)white_before;
            continue;
        }
        p = collapse_bytes(p, p + 8, &out, start, &gap);
        white_before = is_space[p[-1]];
    }
    collapse_bytes(p, end, &out, start, &gap);
    if (_PyBytes_Resize(&result, out - start) < 0)
        return NULL;
    return result;
}

static PyObject *
index_forms(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Table table;
    PyObject *texts, *known, *into, *forms, *form;
    Py_ssize_t i, count;
    int gave_up = 0;

    (void)module;
    if (nargs != 3 && nargs != 4) {
        PyErr_Format(PyExc_TypeError, "index_forms() takes 3 arguments (%zd given)", nargs);
        return NULL;
    }
    texts = args[0];
    known = args[1];
    into = args[2];
    if (!PyList_CheckExact(texts) || !PyAnySet_Check(known) || !PySet_Check(into)) {
        PyErr_SetString(PyExc_TypeError, "index_forms() takes a list of bytes, a set or frozenset, a set");
        return NULL;
    }
    count = PyList_GET_SIZE(texts);
    for (i = 0; i < count; i++) {
        if (!PyBytes_Check(PyList_GET_ITEM(texts, i))) {
            PyErr_SetString(PyExc_TypeError, "index_forms() takes a list of bytes");
            return NULL;
        }
    }
    if (table_init(&table, args, nargs, 3) < 0)
        return NULL;
    forms = PyList_New(count);
    /* The list holds the texts for the whole call (nothing here runs Python code that
       could change it: bytes hash and compare in C), so the slots may point into them;
       one table for all, each slot remembering the text its term was last met in. */
    for (i = 0; forms != NULL && i < count; i++) {
        form = form_of(&table, PyList_GET_ITEM(texts, i), i, known, into, &gave_up);
        if (form == NULL)
            Py_CLEAR(forms);
        else
            PyList_SET_ITEM(forms, i, form);
    }
    PyMem_Free(table.slots);
    if (forms == NULL && gave_up)
        Py_RETURN_NONE;
    return forms;
}

/* The start and end offsets of a call on ``data``, checked as the twins check them. */
static int
byte_offset(PyObject *arg, Py_ssize_t size, Py_ssize_t *out)
{
    if (!PyLong_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "offsets are int");
        return -1;
    }
    *out = PyLong_AsSsize_t(arg);
    if (*out == -1 && PyErr_Occurred())
        return -1;
    if (*out < 0 || *out > size) {
        PyErr_SetString(PyExc_ValueError, "offset out of range");
        return -1;
    }
    return 0;
}

static PyObject *
find_dot_line(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    const char *base, *p, *end, *lf;
    Py_ssize_t start;

    (void)module;
    if (nargs != 2 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "find_dot_line() takes bytes and an offset");
        return NULL;
    }
    if (byte_offset(args[1], PyBytes_GET_SIZE(args[0]), &start) < 0)
        return NULL;
    base = PyBytes_AS_STRING(args[0]);
    end = base + PyBytes_GET_SIZE(args[0]);
    /* an LF with a byte after it: never the last byte */
    for (p = base + start; end - p >= 2; p = lf + 1) {
        lf = memchr(p, '\n', (size_t)(end - p - 1));
        if (lf == NULL)
            break;
        if (lf[1] == '.')
            return PyLong_FromSsize_t(lf - base);
    }
    return PyLong_FromLong(-1);
}

static PyObject *
line_ends(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    const char *p, *end, *cr;
    Py_ssize_t size, start, stop;
    int cr_open;

    (void)module;
    if (nargs != 4 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "line_ends() takes bytes, two offsets and a bool");
        return NULL;
    }
    size = PyBytes_GET_SIZE(args[0]);
    if (byte_offset(args[1], size, &start) < 0 || byte_offset(args[2], size, &stop) < 0)
        return NULL;
    if (stop < start) {
        PyErr_SetString(PyExc_ValueError, "offset out of range");
        return NULL;
    }
    cr_open = PyObject_IsTrue(args[3]);
    if (cr_open < 0)
        return NULL;
    p = PyBytes_AS_STRING(args[0]) + start;
    end = PyBytes_AS_STRING(args[0]) + stop;
    if (p == end)
        return PyLong_FromLong(cr_open);
    if (cr_open) {
        if (*p != '\n')
            return PyLong_FromLong(-1);
        p++;
    }
    /* From CR to CR: the bytes before each hold no LF, and the byte after it is one. */
    while (p < end) {
        cr = memchr(p, '\r', (size_t)(end - p));
        if (cr == NULL)
            return PyLong_FromLong(memchr(p, '\n', (size_t)(end - p)) == NULL ? 0 : -1);
        if (memchr(p, '\n', (size_t)(cr - p)) != NULL)
            return PyLong_FromLong(-1);
        if (cr + 1 == end)
            return PyLong_FromLong(1);
        if (cr[1] != '\n')
            return PyLong_FromLong(-1);
        p = cr + 2;
    }
    return PyLong_FromLong(0);
}

static PyObject *
count_lf(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    const unsigned char *p, *end;
    Py_ssize_t size, start, stop, count = 0;
    uint64_t v;

    (void)module;
    if (nargs != 3 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "count_lf() takes bytes and two offsets");
        return NULL;
    }
    size = PyBytes_GET_SIZE(args[0]);
    if (byte_offset(args[1], size, &start) < 0 || byte_offset(args[2], size, &stop) < 0)
        return NULL;
    if (stop < start) {
        PyErr_SetString(PyExc_ValueError, "offset out of range");
        return NULL;
    }
    p = (const unsigned char *)PyBytes_AS_STRING(args[0]) + start;
    end = (const unsigned char *)PyBytes_AS_STRING(args[0]) + stop;
    /* An LF byte is a zero byte of v ^ LFs: the high bit of each byte of the sum below is
       set exactly in the non-zero bytes (no carry crosses a byte), so the LFs are the
       high bits left clear.  Those are added up a byte each (a 1 per LF), and the eight
       byte counters summed every 255 rounds, before one could overflow. */
    while (end - p >= 8) {
        uint64_t counters = 0;
        int rounds;
        for (rounds = 0; rounds < 255 && end - p >= 8; rounds++, p += 8) {
            v = load_le64(p) ^ (ONES * '\n');
            counters += (~(((v & LOWS) + LOWS) | v) & HIGHS) >> 7;
        }
        /* pairs of bytes into four 16-bit sums (each <= 510), then those added up */
        counters = (counters & 0x00ff00ff00ff00ffULL) + ((counters >> 8) & 0x00ff00ff00ff00ffULL);
        count += (Py_ssize_t)((counters * 0x0001000100010001ULL) >> 48);
    }
    for (; p < end; p++)
        count += *p == '\n';
    return PyLong_FromSsize_t(count);
}

static PyMethodDef methods[] = {
    {"add_new_terms", (PyCFunction)(void (*)(void))add_new_terms, METH_FASTCALL,
     "add_new_terms(data: bytes, known: set | frozenset, into: set) -> None\n\n"
     "Adds to into each distinct run of ASCII letters, digits and bytes >= 0x80 in data\n"
     "that known lacks."},
    {"distinct_terms", (PyCFunction)(void (*)(void))distinct_terms, METH_FASTCALL,
     "distinct_terms(data: bytes) -> bytes | None\n\n"
     "The distinct runs of ASCII letters, digits and bytes >= 0x80 in data, each once in\n"
     "the order found, joined by a SPACE; None when the table could not tell."},
    {"index_forms", (PyCFunction)(void (*)(void))index_forms, METH_FASTCALL,
     "index_forms(texts: list[bytes], known: set | frozenset, into: set) -> list[bytes] | None\n\n"
     "distinct_terms of each text, and into gets every distinct term of them all that\n"
     "known lacks; None when the table could not tell (into may hold some terms then)."},
    {"collapse_ascii", collapse_ascii, METH_O,
     "collapse_ascii(data: bytes) -> bytes\n\n"
     "Each run of ASCII whitespace (str.isspace) made one SPACE, none at the ends."},
    {"find_dot_line", (PyCFunction)(void (*)(void))find_dot_line, METH_FASTCALL,
     "find_dot_line(data: bytes, start: int) -> int\n\n"
     "data.find(b'\\n.', start), with 0 <= start <= len(data)."},
    {"line_ends", (PyCFunction)(void (*)(void))line_ends, METH_FASTCALL,
     "line_ends(data: bytes, start: int, end: int, cr_open: bool) -> int\n\n"
     "-1: data[start:end] (after a CR when cr_open) holds a bare CR or LF; 1: CR LF pairs\n"
     "and a CR last; 0: CR LF pairs only."},
    {"count_lf", (PyCFunction)(void (*)(void))count_lf, METH_FASTCALL,
     "count_lf(data: bytes, start: int, end: int) -> int\n\n"
     "data.count(b'\\n', start, end), with 0 <= start <= end <= len(data)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_textscan",
    "Byte scans of text: the terms of FTS5's ascii tokenizer, ASCII whitespace collapsed,"
    " SMTP DATA's dot lines and line ends.",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__textscan(void)
{
    int c;
    for (c = 0; c < 256; c++) {
        is_term[c] = (unsigned char)(c >= 0x80 || (c >= '0' && c <= '9') ||
                                     (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'));
        is_space[c] = (unsigned char)((c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20));
    }
    return PyModule_Create(&module_def);
}
