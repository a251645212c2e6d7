"""Arrow schemas of the output tables (videos, shots, clips, rejects) and their version."""
from schemas.tables import SCHEMA_VERSION, TABLES, SchemaError, TableSpec, to_table, validate

__all__ = ["SCHEMA_VERSION", "TABLES", "SchemaError", "TableSpec", "to_table", "validate"]
