"""Operations shared by the agent and the REST API: datasets, compatibility, jobs, inference.

Persistence lives here (`tools.db`). Every operation receives its context (user, database
session, storage) explicitly through `tools.context.ToolContext`; nothing is read from module
globals.
"""
