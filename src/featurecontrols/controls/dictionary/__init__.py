"""controls/dictionary"""
