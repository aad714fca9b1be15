"""Many tasks: every result, in order."""
import jobfuncs
import mapdeploy as gl


def test_twenty_thousand_tasks_complete_in_order():
    n = 20_000
    job = gl.deploy.map_job.create(jobfuncs.add, [{"x": i, "y": 1} for i in range(n)])
    assert job.get_results() == [i + 1 for i in range(n)]
    metrics = job.get_metrics()
    assert len(metrics) == n
    assert set(metrics["status"]) == {"Completed"}
    assert metrics[n - 1]["task_name"] == f"add-0-{n - 1}"
