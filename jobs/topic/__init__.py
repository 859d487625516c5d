"""Topic databases (主题库), derived from the base databases: one module per topic family."""
