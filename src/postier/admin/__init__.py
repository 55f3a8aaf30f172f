"""postier.admin: data ownership — backup, verify, restore, export, import, migration.

- :mod:`postier.admin.backup`: online snapshot (SQLite backup API + content-addressed
  body files + manifest), ``verify``, ``restore`` (identity-preserving: copies the database).
- :mod:`postier.admin.archive`: ``export_account`` / ``import_account`` dispatching to
  :mod:`postier.admin.maildir` (Maildir++, Dovecot flags) and :mod:`postier.admin.mbox`
  (mboxrd, Status/X-Status).
- :mod:`postier.admin.migrate`: copy an account from another IMAP server.
- :mod:`postier.admin.transfer`: the shared importer (dedup by message hash, batches).
"""
