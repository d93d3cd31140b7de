"""Neural network parts of D2-4FAD: frozen teacher, student decoder, learn-to-weight."""
