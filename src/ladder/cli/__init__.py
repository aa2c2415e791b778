"""The ``ladder`` command line: thin verbs that parse, call one library function, print."""
