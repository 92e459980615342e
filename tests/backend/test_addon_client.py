"""The add-on's backend client and job runner (lion_blender/client.py, jobs.py), imported from the
source tree into the backend's Python, against a real backend process started from the source
tree: no Blender and no build needed."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_client_and_jobs_import_from_the_source_tree_without_blender():
    probe = ("import sys, lion_blender.client, lion_blender.jobs, backend.protocol; "
             "assert lion_blender.client.protocol is backend.protocol; "
             "assert 'bpy' not in sys.modules and 'mathutils' not in sys.modules")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


@pytest.fixture
def client(tmp_path):
    from lion_blender.client import BackendClient

    client = BackendClient(sys.executable, ROOT, str(tmp_path / "work"), env={"LION_DEVICE": "cpu"})
    yield client
    client.stop()


def test_a_job_of_two_requests_runs_to_its_finish_against_the_source_trees_backend(client):
    from lion_blender import jobs

    job = jobs.start("Check", client, [jobs.Task("hello"), jobs.Task("hello")],
                     lambda replies: f"{len(replies)} replies from {replies[0][0]['device']}")
    job.wait(timeout_per_request=120)
    assert job.state == jobs.FINISHED and job.message == "2 replies from cpu", job.message


def test_a_bad_request_fails_the_job_with_the_backends_message(client):
    from lion_blender import jobs

    job = jobs.start("Coffee", client, [jobs.Task("make_coffee")], lambda replies: "never")
    job.wait(timeout_per_request=120)
    assert job.state == jobs.FAILED and "make_coffee" in job.message
