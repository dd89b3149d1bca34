"""`wsgate worker`: the edge's policy rendered as a Cloudflare Worker, run locally in workerd."""
