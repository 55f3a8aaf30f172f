/* The distinct terms of a byte string, as FTS5's "ascii" tokenizer finds them.
 *
 *     unique_terms(data: bytes) -> set[bytes]
 *
 * A term is a maximal run of ASCII letters and digits and of bytes >= 0x80 (UTF-8
 * sequences, so a run never cuts a character); every other byte separates terms.  The
 * result equals ``set(data.translate(words._SPACED).split())``, the pure-Python twin in
 * words.py that runs when this module is not built; a test holds the two equal on any
 * bytes (tests/unit/store/test_words.py).
 *
 * Why C: the indexer needs each message's distinct terms for the vocabulary (words.py).
 * In Python that is a bytes object and a SipHash for every word of the text, ~1,600 for
 * 10 KB of English: ~250 us, a third of the index process's CPU per message.  Here the
 * repeats are found first in a table of (start, length, FNV-1a hash) over the input
 * itself, so only the distinct terms (~530) become objects (bench/README.md, SMTP,
 * session 8).  No library does this one thing; see docs/architecture.md.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static unsigned char is_term[256];

typedef struct {
    const unsigned char *start; /* NULL: an empty slot */
    Py_ssize_t len;
    uint64_t hash;
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

static PyObject *
unique_terms(PyObject *module, PyObject *arg)
{
    const unsigned char *p, *end, *start;
    size_t capacity = 256, used = 0, i;
    Slot *slots;
    PyObject *out, *term;
    uint64_t hash;
    Py_ssize_t len;

    (void)module;
    if (!PyBytes_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "unique_terms() takes bytes, not %.100s",
                     Py_TYPE(arg)->tp_name);
        return NULL;
    }
    out = PySet_New(NULL);
    if (out == NULL)
        return NULL;
    slots = PyMem_Calloc(capacity, sizeof(Slot));
    if (slots == NULL) {
        Py_DECREF(out);
        return PyErr_NoMemory();
    }
    /* ``arg`` is immutable and referenced by the caller for the whole call: the slots
       may point into it. */
    p = (const unsigned char *)PyBytes_AS_STRING(arg);
    end = p + PyBytes_GET_SIZE(arg);
    for (;;) {
        while (p < end && !is_term[*p])
            p++;
        if (p == end)
            break;
        start = p;
        hash = 14695981039346656037ULL; /* FNV-1a, 64 bits */
        while (p < end && is_term[*p]) {
            hash = (hash ^ *p) * 1099511628211ULL;
            p++;
        }
        len = p - start;
        i = slot_index(hash, capacity - 1);
        for (;;) {
            Slot *slot = &slots[i];
            if (slot->start == NULL) { /* the first time: a new term */
                slot->start = start;
                slot->len = len;
                slot->hash = hash;
                term = PyBytes_FromStringAndSize((const char *)start, len);
                if (term == NULL || PySet_Add(out, term) < 0) {
                    Py_XDECREF(term);
                    goto error;
                }
                Py_DECREF(term);
                used++;
                if (used * 2 > capacity && grow(&slots, &capacity) < 0)
                    goto error;
                break;
            }
            if (slot->hash == hash && slot->len == len && memcmp(slot->start, start, (size_t)len) == 0)
                break; /* seen before */
            i = (i + 1) & (capacity - 1);
        }
    }
    PyMem_Free(slots);
    return out;

error:
    PyMem_Free(slots);
    Py_DECREF(out);
    return NULL;
}

static PyMethodDef methods[] = {
    {"unique_terms", unique_terms, METH_O,
     "unique_terms(data: bytes) -> set[bytes]\n\n"
     "The distinct runs of ASCII letters, digits and bytes >= 0x80 in data."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_termscan",
    "The distinct terms of FTS5's ascii tokenizer in a byte string (see words.py).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__termscan(void)
{
    int c;
    for (c = 0; c < 256; c++)
        is_term[c] = (unsigned char)(c >= 0x80 || (c >= '0' && c <= '9') ||
                                     (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'));
    return PyModule_Create(&module_def);
}
