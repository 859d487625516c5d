"""Quality: findings (row-level problems sent back to departments) and GX gates (write-audit-publish)."""
