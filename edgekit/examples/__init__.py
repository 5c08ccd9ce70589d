"""The built-in examples (MNIST CNNs, the text teacher and its data), made on first use and cached."""
