"""Small shared utilities: distributed helpers, events, logging, seeding, visualisation."""
