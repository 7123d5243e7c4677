"""Customer surveys (CSAT, NPS, CES) after resolution, asked in the customer's own channel."""
