"""Helpers the tests share (builders, fakes, a test-only code location); no tests live here."""
