"""Media: segment decoding (PyAV, CENC), the decode pipeline and the A/V clock."""
