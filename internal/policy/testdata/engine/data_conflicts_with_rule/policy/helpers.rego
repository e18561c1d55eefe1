package test

mappings := {}
