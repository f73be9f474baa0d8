"""Who is calling and what they may do: principals, the authorisation table and its grants
(authz), API clients and their secrets, the kept credentials, failure budgets.
"""
