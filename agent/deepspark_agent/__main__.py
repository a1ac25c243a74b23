from deepspark_agent.cli import app

app(prog_name="deepspark-agent")
