"""What a run tells its user: progress as it goes, the HTML report at the end."""
