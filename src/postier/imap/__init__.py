"""postier.imap"""
