"""What configures a run: settings from the environment, the command line, the App Panel."""
