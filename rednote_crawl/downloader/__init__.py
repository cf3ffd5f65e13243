"""The downloader side: every call passes the policy (judging answers), the throttle (stops,
backoff, the token's rate, the budget) and the handler (the token, at the last hop)."""
