"""The customer portal (issue 15): a signed, expiring, revocable link shows one contact its
conversations on every channel and lets it answer them."""
