"""One job over several runner hosts, coordinated by Prefect: a coordinator flow run starts one
part per runner and step (a oneShot group, or one phase of one grayScale round) on the runner's
work queue and waits for all of them before the next step."""
