"""The three axes of a verdict (DESIGN.md): decodable, learned, used. One file each."""
