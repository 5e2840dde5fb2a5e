"""The labelled corpus: small real training runs with the check ids each must (and must not) raise."""
