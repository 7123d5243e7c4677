"""The rules of the core as pure functions: which conversation a message joins
(`threading`), how a conversation's status moves (`lifecycle`), what occupies an agent's
capacity (`load`), and how identities resolve to contacts (`identity`).

No I/O and no store here: a store gathers the facts, calls a rule, and writes what it
decided. Each rule is tested alone with a table of cases (tests/domain/)."""
