"""Images, audio and their prices: calls billed by the image, the second or the character."""
