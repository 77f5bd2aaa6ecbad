"""Beyond one machine: a project served by many gateway processes (docs/cluster.md). Ray is imported only by
mlitb.cluster.actors and what starts it (mlitb serve --ray), never by a plain server."""
