"""jpki: a national public-key infrastructure in the style of JPKI (公的個人認証サービス)."""

__version__ = "0.1.0"
