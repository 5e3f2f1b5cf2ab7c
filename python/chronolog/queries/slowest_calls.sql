-- The 20 longest activations, with their arguments and what they returned.
SELECT function, duration_ns, args, return_value, exit, start_seq, thread_id
FROM calls
WHERE duration_ns IS NOT NULL
ORDER BY duration_ns DESC, start_seq
LIMIT 20
