"""Runtime: the Worker assembled from Settings (Faust app, tables, agents) and its HTTP routers."""
