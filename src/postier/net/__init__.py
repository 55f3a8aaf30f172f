"""postier.net"""
