"""Pure edge policy: routes, header rules, cache rule, WebSocket handshake checks.

No I/O here: every function takes values and returns values, so the rules that keep
the secret and the client's identity honest are testable exhaustively.
"""
