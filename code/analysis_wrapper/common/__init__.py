"""What every stage uses: secrets masked in messages, retries, atomic writes."""
