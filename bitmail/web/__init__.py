"""The aiohttp application: pages, JSON API, live updates, webhooks, health."""
