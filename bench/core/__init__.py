"""The torch-free core: records, results, configuration, statistics, comparison, formats and errors."""
