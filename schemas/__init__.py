"""Recipe, record and published-view schemas of cotforge."""
