"""The certificate authorities: key ceremony and generations, the recipe, certificate profiles and
their lint.
"""
