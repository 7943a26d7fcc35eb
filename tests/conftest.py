"""The fixtures and ``--backend`` come from ioasid's pytest plugin, loaded through its
``pytest11`` entry point as in any project that installs ioasid (no ``pytest_plugins`` here:
that would register it twice)."""
