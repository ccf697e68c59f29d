"""The test kit's helpers under the name the tests import them by (testkit/ holds them, split by concern)."""
from testkit.access import (TEST_ACCESS, control_headers, environ_for, running_stack_env_file, sigv4_headers,
                            use_test_access)
from testkit.photos import REPO, TESTDATA, jpeg_bytes
from testkit.procs import alive, descendants, free_port, proc_stats, tree_cpu_ms, unique_prefix, wait_for
from testkit.signin import (bearer, key_sending_client_class, keyed_client, open_sign_in_link, redeem_sign_in_link,
                            sign_in_url, sign_in_with_key)
from testkit.stack import (AWS_TEST_ENV, LocalStack, printed_admin_key, stack_child_pid, stack_state_dir, start_moto,
                           start_stack, start_stack_again, start_worker_process)

__all__ = ["AWS_TEST_ENV", "REPO", "TESTDATA", "TEST_ACCESS", "LocalStack", "control_headers", "environ_for",
           "running_stack_env_file", "sigv4_headers", "use_test_access", "alive", "bearer", "descendants", "free_port",
           "jpeg_bytes", "key_sending_client_class", "keyed_client", "open_sign_in_link", "printed_admin_key",
           "proc_stats", "redeem_sign_in_link", "sign_in_url", "sign_in_with_key", "stack_child_pid",
           "stack_state_dir", "start_moto", "start_stack", "start_stack_again", "start_worker_process", "tree_cpu_ms",
           "unique_prefix", "wait_for"]
