"""The example of GraphLab Create's "Launching Distributed Jobs" document, on mapdeploy.

Unchanged except for `import mapdeploy as gl`, Python 3 print() and no
environment argument: it runs on the local default environment (LocalAsync).
"""
import mapdeploy as gl


def add(x, y):
    return x + y


# Execute a map_job.
job = gl.deploy.map_job.create(add, [{'x': 20, 'y': 20},
                                     {'x': 10, 'y': 10},
                                     {'x': 5,  'y': 5}])

# Get a list of results.
print(job.get_map_results())

# Capture exceptions if the execution failed.
job = gl.deploy.map_job.create(add, [{'x': 20, 'y': 20},
                                     {'x': None, 'y': 10},
                                     {'x': 5,  'y': 5}])

# Exception captured in metrics if the execution failed.
metrics = job.get_metrics()

print(metrics)

# Capture partial results of functions that didn't fail.
print(job.get_map_results())


def add_combiner(**kwargs):
    return sum(kwargs.values())


# Call map, and then combine all the results using the add_combiner.
job = gl.deploy.map_job.create(add, [{'x': 20, 'y': 20},
                                     {'x': 10, 'y': 10},
                                     {'x': 5,  'y': 5}],
                               combiner_function=add_combiner)

# get_map_results() would still return [40, 20, 10]
# use get_results() to get result from combiner
print(job.get_results())
