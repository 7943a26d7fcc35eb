pytest_plugins = ["ioasid.testing.plugin"]
