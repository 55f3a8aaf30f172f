"""postier.mail"""
