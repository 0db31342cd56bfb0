"""The ``dpaudit`` command line: thin click commands over the library."""
