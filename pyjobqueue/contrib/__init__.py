"""Integrations with other libraries, each behind an extra: `opentelemetry` (`[otel]`)
and `prometheus` (`[prometheus]`). Nothing here is imported unless you import it."""
