"""Who is calling: principals, API clients and their secrets, the kept credentials, failure
budgets.
"""
