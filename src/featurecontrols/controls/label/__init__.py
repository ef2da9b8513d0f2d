"""controls/label"""
