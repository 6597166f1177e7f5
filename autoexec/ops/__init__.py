"""One operation on one node: arguments, references, conditions, tools, native ops, dispatch to a transport."""
