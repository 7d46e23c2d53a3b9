"""Per-user API tokens for the JSON API (imagesync.api): shown once, stored hashed, revocable."""
