"""postier.admin"""
