# The seed's "Manual Testing: Test Bedrock Integration", as written; only the import line
# differs (backend.infrastructure.aws.services.llm_adapter -> llm_failover).
import asyncio
from llm_failover import AWSLLMAdapter

async def test_bedrock():
    adapter = AWSLLMAdapter(region_name="us-east-1")
    
    result = await adapter.generate_completion(
        prompt="What is 2+2? Answer with just the number.",
        agent_id="test_agent",
        tenant_id="test_tenant",
        model="gpt-4",
        temperature=0.1,
        max_tokens=10,
        response_format="text"
    )
    
    print(f"Provider: {result['provider']}")
    print(f"Content: {result['content']}")
    print(f"Tokens: {result['tokens']}")
    print(f"Cost: ${result['estimated_cost']:.6f}")
    print(f"Cached: {result['cached']}")

asyncio.run(test_bedrock())
