"""The key (pure) and what goes into it: the code's identity from git and Code Ocean."""
