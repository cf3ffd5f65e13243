"""Output files for analysts: flat rows (CSV, Excel) derived from the item's schema, the formats a
file name picks, and whole files written atomically. Plain Python and Scrapy's item exporters."""
